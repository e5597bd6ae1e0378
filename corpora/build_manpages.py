"""Build a plain-text corpus from this machine's section-1 man pages (English technical prose).

    python corpora/build_manpages.py OUT.txt [--limit N]

Each page is rendered with `man` at 80 columns with overstrikes removed (`col -b`), in sorted
order, so the same machine gives the same corpus. Nothing is downloaded or shipped: the text is
whatever manual pages the machine has installed.
"""
import argparse
import glob
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor


def render(path):
    env = {**os.environ, "MANWIDTH": "80", "MAN_KEEP_FORMATTING": "0", "LC_ALL": "C.UTF-8"}
    man = subprocess.run(["man", "-l", "-P", "cat", path], capture_output=True, env=env)
    text = subprocess.run(["col", "-bx"], input=man.stdout, capture_output=True).stdout
    return text.decode("utf-8", errors="replace")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out")
    p.add_argument("--limit", type=int, default=None, help="render at most this many pages")
    args = p.parse_args()
    pages = sorted(glob.glob("/usr/share/man/man1/*.1*"))[: args.limit]
    with ThreadPoolExecutor(os.cpu_count()) as pool, open(args.out, "w", encoding="utf-8") as f:
        for text in pool.map(render, pages):
            f.write(text.strip() + "\n\n")
    print(f"{len(pages)} pages, {os.path.getsize(args.out)} bytes -> {args.out}")


if __name__ == "__main__":
    main()

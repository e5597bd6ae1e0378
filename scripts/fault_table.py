"""Write the table of fault points in docs/reference/reliability.md from the fault-injection
harness, tests/test_faults.py, which then checks it on every run of the suite.

    python scripts/fault_table.py
"""
import os
import subprocess
import sys
from pathlib import Path

if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "CHARRNN_WRITE_FAULT_TABLE": "1"}
    sys.exit(subprocess.call([sys.executable, "-m", "pytest", "-q", "tests/test_faults.py"],
                             cwd=root, env=env))

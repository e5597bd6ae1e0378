"""Models of raw bytes (trained with --bytes): they read and write one character per byte, its
latin-1 code point. Here the text and bytes people give and get become those characters, and
back; nothing else converts them.

Text is given as a str (its UTF-8 bytes) or as bytes (as they are); a model's characters come
back as UTF-8 text (invalid sequences U+FFFD) or, raw, as bytes.
"""
import codecs

from .errors import UsageError


def is_byte_model(meta):
    """Whether a checkpoint's meta says that its model reads raw bytes."""
    corpus = meta.get("corpus")
    return isinstance(corpus, dict) and corpus.get("bytes") is True


def bytes_of(text):
    """The bytes of text: a str's UTF-8 (a UsageError for one that has no UTF-8, such as a lone
    surrogate), bytes as they are."""
    if isinstance(text, (bytes, bytearray)):
        return bytes(text)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise UsageError(f"{text[e.start:e.end]!r} at position {e.start} of the text "
                         f"{text[:40]!r} has no UTF-8 bytes; give valid text, or bytes") from None


def model_chars(text, as_bytes):
    """The characters a model reads for text given to it: a byte model's (as_bytes) one per
    byte of bytes_of(text), a str or bytes; a text model's the str as it is (it refuses bytes).
    Other values pass unchanged, for the caller's checks to name."""
    if isinstance(text, (bytes, bytearray)) and not as_bytes:
        raise UsageError("this model reads text, not bytes (it was not trained with --bytes); "
                         "give a str")
    if as_bytes and isinstance(text, (str, bytes, bytearray)):
        return bytes_of(text).decode("latin-1")
    return text


def raw_of(chars):
    """The bytes that a byte model's characters stand for."""
    return chars.encode("latin-1")


def _decoder():
    return codecs.getincrementaldecoder("utf-8")("replace")


def text_of(data):
    """The text that bytes spell in UTF-8, invalid sequences as U+FFFD, less a character left
    unfinished at their end: the text after them finishes it (as utf8's after a prime); a str
    as it is."""
    return _decoder().decode(data) if isinstance(data, (bytes, bytearray)) else data


def decoder(prime=""):
    """decode(chunk, final=False): a byte model's text chunks (each character one byte: its
    latin-1 code point) as the UTF-8 text they spell, decoded incrementally: a character split
    across chunks comes out whole, invalid sequences as U+FFFD; final flushes what is left.
    prime: the characters before the chunks, whose text is not given back, but whose
    unfinished last character the chunks may finish."""
    d = _decoder()
    d.decode(raw_of(prime))
    return lambda chunk, final=False: d.decode(raw_of(chunk), final=final)


def utf8(chunks, prime=""):
    """decoder()'s text of each chunk, then of the end."""
    decode = decoder(prime)
    for chunk in chunks:
        yield decode(chunk)
    yield decode("", final=True)

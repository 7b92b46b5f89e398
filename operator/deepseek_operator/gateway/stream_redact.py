"""Redaction of a text that arrives in pieces (one stream of a streamed completion).

Pure (no I/O). `StreamRedactor.feed` takes the next piece and returns what can be passed
on: everything except the last `Scanner.window` bytes (W), which are held because a match
may start there and end in a piece yet to come. A match that starts before the held tail
cannot change any more (it is shorter than the window), so it is final: replaced by its
placeholder and counted. Hence a match split across two pieces is redacted. To scan less
often, the redactor scans only once `stride` (S) new bytes have gathered beyond the held
W; so a byte is passed on at the latest when W + S bytes of later text have arrived (the
detector window, `holdback`; 347 + 64 = 411 bytes with the default detectors), or at the
end of the stream. A match that extends (a private key
block, a token: `detect.Detector.until`) suppresses what follows until its terminator;
up to `until_max_span - 1` bytes are held for a terminator split across pieces.

Cost: each scan reads W + S bytes and releases S or more, so a stream of n bytes costs
O(n x (W + S) / S) (RE2, linear per scan), whatever the piece size. With `lazy`, the
redactor scans only when four windows have gathered (amortized O(n)) and releases nothing
meanwhile: for counting when the text is passed on unchanged anyway.
"""

from __future__ import annotations

from .detect import Detector, Scanner, placeholder

_CONTEXT_BYTES = 8
STRIDE = 64
"""Default bytes gathered beyond the held window before a scan (module docstring)."""
_RESUME_CONTEXT = b"\n"  # context after a suppressed block: a boundary


class StreamRedactor:
    """One text stream's redaction state (module docstring). Not thread-safe."""

    def __init__(self, scanner: Scanner, *, lazy: bool = False, stride: int = STRIDE) -> None:
        """Redact with `scanner`'s detectors; scan when `stride` bytes (>= 1) gathered
        beyond the window; `lazy`: scan in batches of four windows."""
        self._scanner = scanner
        self.holdback = scanner.window + max(1, stride)
        self._threshold = 4 * scanner.window if lazy else self.holdback
        self._context = b""
        self._pending = b""
        self._suppress: Detector | None = None
        self.counts: dict[str, int] = {}

    def feed(self, data: bytes) -> bytes:
        """Take the next piece (UTF-8); return the redacted bytes that may be passed on
        now (whole UTF-8 characters; possibly empty)."""
        self._pending += data
        if len(self._pending) < self._threshold and self._suppress is None:
            return b""
        return self._drain(final=False)

    def close(self) -> bytes:
        """The stream ended: the rest, redacted."""
        return self._drain(final=True)

    def _drain(self, *, final: bool) -> bytes:
        out: list[bytes] = []
        scanner = self._scanner
        while True:
            if self._suppress is not None:
                detector = self._suppress
                found = scanner.terminator(detector, self._pending, 0)
                if found is None:
                    keep = 0 if final else detector.until_max_span - 1
                    self._pending = self._pending[len(self._pending) - keep:] if keep else b""
                    return b"".join(out)
                self._pending = self._pending[found[1] if detector.consume_until
                                              else found[0]:]
                self._suppress = None
                self._context = _RESUME_CONTEXT
            text = self._context + self._pending
            base = len(self._context)
            safe = len(text) if final else len(text) - scanner.window
            at = base
            for match in scanner.find(text, base):
                if match.start >= safe:
                    break
                out.append(text[at:match.start])
                out.append(placeholder(match.detector))
                name = match.detector.name
                self.counts[name] = self.counts.get(name, 0) + 1
                at = match.end
                if match.detector.until is not None:
                    self._suppress = match.detector
                    break
            if self._suppress is not None:
                self._pending = text[at:]
                continue
            cut = max(at, safe)
            while at < cut < len(text) and text[cut] & 0xC0 == 0x80:
                cut -= 1  # not inside a UTF-8 character
            out.append(text[at:cut])
            emitted = text[:cut]
            context = emitted[-_CONTEXT_BYTES:]
            while context and context[0] & 0xC0 == 0x80:
                context = context[1:]
            self._context = context
            self._pending = text[cut:]
            return b"".join(out)

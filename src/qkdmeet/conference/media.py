"""Synthetic media for the headless bot: test-pattern camera, tone, slides.

Every video frame carries a *frame code* in its top rows: three rows of 32
large black/white blocks holding the frame counter, the send time (ms, mod
2**32) and a check word. The blocks are ``width // 40`` pixels wide (16 at
640x480), which VP8 preserves even at low bitrates, so :func:`read_frame_code`
recovers counter and send time from a decoded frame and the receiver measures
loss and latency (``stats.py``). A frame whose check word does not match is
reported as unreadable rather than guessed.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from typing import Any

import numpy as np
from aiortc import MediaStreamTrack
from av import AudioFrame, VideoFrame

VIDEO_CLOCK = 90000
AUDIO_RATE = 48000
AUDIO_SAMPLES = 960  # 20 ms
CODE_BITS = 32
_CHECK_MAGIC = 0xA5C3_5A3C
_WHITE, _BLACK = 235, 16


def _block(width: int) -> int:
    b = width // 40
    if b < 4:
        raise ValueError(f"frame width {width} too small for the frame code (>= 160)")
    return b


def write_frame_code(y_plane: np.ndarray, counter: int, sent_ms: int) -> None:
    """Draw the frame code into a luma plane (in place)."""
    h, w = y_plane.shape
    b = _block(w)
    if h < 5 * b:
        raise ValueError(f"frame height {h} too small for the frame code")
    x0 = (w - CODE_BITS * b) // 2
    words = [counter & 0xFFFFFFFF, sent_ms & 0xFFFFFFFF]
    words.append(words[0] ^ words[1] ^ _CHECK_MAGIC)
    bits = (
        np.asarray(words, dtype=np.uint64)[:, None] >> np.arange(31, -1, -1, dtype=np.uint64)
    ) & 1
    rows = np.where(bits.astype(bool), _WHITE, _BLACK).astype(np.uint8)  # 3 x 32
    blocks = np.repeat(np.repeat(rows, b, axis=0), b, axis=1)
    y_plane[b : 4 * b, x0 : x0 + CODE_BITS * b] = blocks


def read_frame_code(y_plane: np.ndarray) -> tuple[int, int] | None:
    """(counter, sent_ms) from a luma plane, or None if the code does not check."""
    h, w = y_plane.shape
    b = _block(w)
    if h < 5 * b:
        return None
    x0 = (w - CODE_BITS * b) // 2
    q = b // 4
    region = y_plane[b : 4 * b, x0 : x0 + CODE_BITS * b].astype(np.float32)
    cells = region.reshape(3, b, CODE_BITS, b)[:, q : b - q, :, q : b - q].mean(axis=(1, 3))
    bits = (cells > (_WHITE + _BLACK) / 2).astype(np.uint64)
    words = [int((row << np.arange(31, -1, -1, dtype=np.uint64)).sum()) for row in bits]
    if words[0] ^ words[1] ^ _CHECK_MAGIC != words[2]:
        return None
    return words[0], words[1]


def luma(frame: VideoFrame) -> np.ndarray:
    """The luma plane of a decoded yuv420p frame, without conversion."""
    plane = frame.planes[0]
    rows: np.ndarray = np.frombuffer(memoryview(plane), dtype=np.uint8)
    return rows.reshape(frame.height, plane.line_size)[:, : frame.width]


def now_ms() -> int:
    return int(time.time() * 1000)


class _PacedVideoTrack(MediaStreamTrack):
    """A video track that paces frames at ``fps`` and stamps each with its code."""

    kind = "video"

    def __init__(self, width: int, height: int, fps: float) -> None:
        super().__init__()
        if width % 2 or height % 2 or fps <= 0:
            raise ValueError("width and height must be even, fps positive")
        _block(width)
        self.width, self.height, self.fps = width, height, fps
        self.frames_sent = 0
        self._start: float | None = None
        self._time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self._ticks = round(VIDEO_CLOCK / fps)

    def _planes(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Luma (h x w) and packed chroma (h/2 x w) for frame n."""
        raise NotImplementedError

    async def recv(self) -> VideoFrame:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        n = self.frames_sent
        delay = self._start + n / self.fps - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        y, uv = self._planes(n)
        y = y.copy()
        write_frame_code(y, n, now_ms())
        frame = VideoFrame.from_ndarray(np.concatenate([y, uv]), format="yuv420p")
        frame.pts = n * self._ticks
        frame.time_base = self._time_base
        self.frames_sent += 1
        return frame


class TestPatternTrack(_PacedVideoTrack):
    """A synthetic camera: moving colour bars and a moving box, with the frame code."""

    __test__ = False  # not a pytest class despite its name

    def __init__(self, width: int = 640, height: int = 480, fps: float = 15.0) -> None:
        super().__init__(width, height, fps)
        x = np.arange(2 * width)
        bars = (40 + 180 * ((x // (width // 8)) % 2) * (0.5 + 0.5 * np.sin(x / 37.0))).astype(
            np.uint8
        )
        self._wide_y = np.tile(bars, (height, 1))
        self._uv = np.full((height // 2, width), 128, dtype=np.uint8)
        self._uv[: height // 4, : width // 2] = 90
        self._uv[height // 4 :, width // 2 :] = 170

    def _planes(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        w, h = self.width, self.height
        shift = (4 * n) % w
        y = self._wide_y[:, shift : shift + w].copy()
        s = h // 6
        bx = int((w - s) * (0.5 + 0.5 * math.sin(n / 10)))
        by = int((h - s) * (0.5 + 0.5 * math.cos(n / 13)))
        y[by : by + s, bx : bx + s] = 250
        return y, self._uv


PATIENT_CASE = [
    (
        "Case 0420 - tumour board",
        ["Patient: 58 y, female (simulated)", "Referral: suspected NSCLC", "Site B, hospital"],
    ),
    (
        "Imaging",
        ["CT thorax: 2.8 cm lesion, right upper lobe", "No distant lesions", "PET: SUVmax 9.1"],
    ),
    (
        "Histology",
        ["Adenocarcinoma, TTF-1 positive", "PD-L1 TPS 60 %", "Genomic report: site A"],
    ),
    (
        "Questions for the panel",
        ["Targeted therapy vs. immunotherapy?", "Surgery first?", "Follow-up plan"],
    ),
]


def render_slides(width: int, height: int) -> list[np.ndarray]:
    """Luma planes of the patient-case slides (PIL text; block text without PIL)."""
    slides = []
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:  # pragma: no cover - Pillow is installed with matplotlib
        Image = None  # type: ignore[assignment]
    for title, lines in PATIENT_CASE:
        if Image is None:  # pragma: no cover
            y = np.full((height, width), 230, dtype=np.uint8)
            for i, _ in enumerate(lines):
                top = height // 4 + i * height // 8
                y[top : top + height // 20, width // 10 : width // 10 * 8] = 40
            slides.append(y)
            continue
        img = Image.new("L", (width, height), 235)
        draw = ImageDraw.Draw(img)
        try:
            big: Any = ImageFont.load_default(size=max(12, height // 12))
            small: Any = ImageFont.load_default(size=max(10, height // 20))
        except TypeError:  # pragma: no cover - old Pillow
            big = small = ImageFont.load_default()
        draw.rectangle([0, 0, width, height // 5], fill=60)
        draw.text((width // 20, height // 12), title, fill=250, font=big)
        for i, line in enumerate(lines):
            draw.text(
                (width // 12, height // 3 + i * height // 8), "- " + line, fill=20, font=small
            )
        slides.append(np.asarray(img, dtype=np.uint8))
    return slides


class SlidesTrack(_PacedVideoTrack):
    """A synthetic screen share: the patient-case slides, one every few seconds."""

    def __init__(
        self, width: int = 1280, height: int = 720, fps: float = 5.0, seconds_per_slide: float = 4
    ) -> None:
        super().__init__(width, height, fps)
        self._slides = render_slides(width, height)
        self._frames_per_slide = max(1, round(seconds_per_slide * fps))
        self._uv = np.full((height // 2, width), 128, dtype=np.uint8)

    def _planes(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        return self._slides[(n // self._frames_per_slide) % len(self._slides)], self._uv


class ToneTrack(MediaStreamTrack):
    """Synthetic audio: a 440 Hz tone, 20 ms mono s16 frames at 48 kHz."""

    kind = "audio"

    def __init__(self, frequency: float = 440.0) -> None:
        super().__init__()
        self.frames_sent = 0
        self._start: float | None = None
        t = np.arange(AUDIO_RATE) / AUDIO_RATE  # one second of samples, loops cleanly
        self._second = (8000 * np.sin(2 * np.pi * frequency * t)).astype(np.int16)
        self._time_base = fractions.Fraction(1, AUDIO_RATE)

    async def recv(self) -> AudioFrame:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        n = self.frames_sent
        delay = self._start + n * AUDIO_SAMPLES / AUDIO_RATE - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        offset = (n * AUDIO_SAMPLES) % AUDIO_RATE
        samples = self._second[offset : offset + AUDIO_SAMPLES].reshape(1, -1)
        frame = AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = n * AUDIO_SAMPLES
        frame.time_base = self._time_base
        self.frames_sent += 1
        return frame

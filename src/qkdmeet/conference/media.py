"""Synthetic media for the headless bot: test-pattern camera, tone, slides.

Every video frame carries a *frame code* in its top rows: three rows of 32
large black/white blocks holding the frame counter, the send time (ms, mod
2**32) and a check word. The blocks are ``width // 40`` pixels wide (16 at
640x480), which VP8 preserves even at low bitrates, so :func:`read_frame_code`
recovers counter and send time from a decoded frame and the receiver measures
loss and latency (``stats.py``). A frame whose check word does not match is
reported as unreadable rather than guessed.

For load tests the camera can instead be a :class:`ReplayVideoTrack`: a loop
of test-pattern frames VP8-encoded once at start-up (:func:`encode_clip`) and
replayed as encoded packets, so the sending bot spends no CPU on encoding.
Replayed frames carry a replay code (loop length and index, no send time).
"""

from __future__ import annotations

import asyncio
import fractions
import json
import math
import os
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, VideoFrame

from qkdmeet.conference.forwarding import is_vp8_keyframe

VIDEO_CLOCK = 90000
AUDIO_RATE = 48000
AUDIO_SAMPLES = 960  # 20 ms

#: Opus frame durations in 48 kHz samples by TOC configuration (RFC 6716, 3.1):
#: SILK 10/20/40/60 ms, Hybrid 10/20 ms, CELT 2.5/5/10/20 ms.
_OPUS_CONFIG_SAMPLES = (
    [480, 960, 1920, 2880] * 3 + [480, 960] * 2 + [120, 240, 480, 960] * 4
)


def opus_packet_samples(packet: bytes) -> int:
    """The duration of an Opus packet in 48 kHz samples, from its TOC byte (RFC 6716,
    3.1); 0 for a packet too short to say."""
    if not packet:
        return 0
    toc = packet[0]
    per_frame = _OPUS_CONFIG_SAMPLES[toc >> 3]
    code = toc & 3
    if code == 0:
        return per_frame
    if code in (1, 2):
        return 2 * per_frame
    if len(packet) < 2:
        return 0
    return (packet[1] & 0x3F) * per_frame
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
        self._running = asyncio.Event()
        self._running.set()
        self._paused_total = 0.0
        self._paused_since: float | None = None

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    @property
    def paused_s(self) -> float:
        """Seconds spent paused so far (the pace resumes after a pause, it does not
        catch up)."""
        ongoing = time.monotonic() - self._paused_since if self._paused_since else 0.0
        return self._paused_total + ongoing

    def pause(self, paused: bool) -> None:
        """Stop (or resume) producing frames: a paused camera sends nothing at all."""
        if paused and self._paused_since is None:
            self._paused_since = time.monotonic()
            self._running.clear()
        elif not paused and self._paused_since is not None:
            self._paused_total += time.monotonic() - self._paused_since
            self._paused_since = None
            self._running.set()

    def _planes(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Luma (h x w) and packed chroma (h/2 x w) for frame n."""
        raise NotImplementedError

    async def recv(self) -> VideoFrame:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        if not self._running.is_set():
            t = loop.time()
            await self._running.wait()
            self._start += loop.time() - t  # resume at the frame rate, from now
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


#: Peak amplitude of the synthetic tone (of 32767).
TONE_AMPLITUDE = 8000
#: Opus's 20 ms silence frame (CELT, full band, one frame: the TOC byte 0xF8 and a
#: frame that decodes to digital silence), sent by a muted pre-encoded microphone.
OPUS_SILENCE = b"\xf8\xff\xfe"
#: RFC 6464 level of digital silence (-dBov).
SILENCE_LEVEL_DBOV = 127


def level_dbov(samples: np.ndarray) -> int:
    """The RFC 6464 level of s16 samples in dBov (0 full scale, -127 silence), as
    aiortc computes it for each audio frame it encodes (RFC 6465, appendix A)."""
    x = samples.astype(np.float64) / 32767
    rms = math.sqrt(float(np.mean(x * x))) if x.size else 0.0
    if rms <= 0:
        return -SILENCE_LEVEL_DBOV
    return max(-SILENCE_LEVEL_DBOV, min(0, round(20 * math.log10(rms))))


class ToneTrack(MediaStreamTrack):
    """Synthetic audio: a 440 Hz tone, 20 ms mono s16 frames at 48 kHz.

    ``muted``: digital silence instead of the tone (a muted microphone, as a
    browser's disabled track: the packets go on, their audio level is 127)."""

    kind = "audio"

    def __init__(self, frequency: float = 440.0) -> None:
        super().__init__()
        self.frames_sent = 0
        self.muted = False
        self._start: float | None = None
        t = np.arange(AUDIO_RATE) / AUDIO_RATE  # one second of samples, loops cleanly
        self._second = (TONE_AMPLITUDE * np.sin(2 * np.pi * frequency * t)).astype(np.int16)
        self._silence = np.zeros((1, AUDIO_SAMPLES), dtype=np.int16)
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
        samples = (
            self._silence
            if self.muted
            else self._second[offset : offset + AUDIO_SAMPLES].reshape(1, -1)
        )
        frame = AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = n * AUDIO_SAMPLES
        frame.time_base = self._time_base
        self.frames_sent += 1
        return frame


# Pre-encoded camera ------------------------------------------------------------
#
# A load test of the server should not spend the machine's cores on the
# *senders'* encoders: real participants encode on their own machines. A
# :class:`ReplayVideoTrack` therefore replays a short loop of VP8 frames that
# was encoded once (:func:`encode_clip`), as ``av.Packet``s that aiortc's
# sender only packetises. Each replayed frame carries a *replay code* in place
# of the frame counter: a flag, the loop length and the index in the loop, and
# no send time (a replayed timestamp would be stale). Receivers unwrap the
# index into a continuous counter (``stats.Unwrapper``), so a loop wrap is not
# a loss, and they measure no latency from replayed frames.

#: Bit 31 of the counter word marks a replayed frame (a live counter would
#: need 4.5 years at 15 fps to reach it).
REPLAY_FLAG = 0x8000_0000
MAX_CLIP_FRAMES = 0x7FFF
_CLIP_MAGIC = b"QKDCLIP1"


def replay_counter(index: int, period: int) -> int:
    """The counter word of frame ``index`` of a replayed loop of ``period`` frames."""
    if not 0 < period <= MAX_CLIP_FRAMES or not 0 <= index < period:
        raise ValueError(f"bad replay index {index} of {period}")
    return REPLAY_FLAG | period << 16 | index


def split_replay_counter(counter: int) -> tuple[int, int] | None:
    """(index, period) of a replay counter word; None for a live frame counter."""
    if not counter & REPLAY_FLAG:
        return None
    period, index = (counter >> 16) & MAX_CLIP_FRAMES, counter & 0xFFFF
    if period == 0 or index >= period:
        return None
    return index, period


@dataclass(frozen=True)
class EncodedClip:
    """A loop of VP8 frames (``frames[0]`` is a keyframe) and how it was made."""

    width: int
    height: int
    fps: float
    bitrate: int
    keyframe_interval: int  # frames
    frames: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not 0 < len(self.frames) <= MAX_CLIP_FRAMES:
            raise ValueError(f"a clip holds 1..{MAX_CLIP_FRAMES} frames")
        if not is_vp8_keyframe(self.frames[0]):
            raise ValueError("a clip must start with a VP8 keyframe")

    @property
    def keyframes(self) -> list[int]:
        return [i for i, data in enumerate(self.frames) if is_vp8_keyframe(data)]

    def bitrate_bps(self) -> float:
        """The clip's mean bitrate when replayed at its frame rate."""
        return 8 * sum(len(f) for f in self.frames) * self.fps / len(self.frames)

    def save(self, path: Path) -> None:
        """Write the clip (atomically: a temporary file renamed into place)."""
        header = json.dumps(
            {
                "width": self.width,
                "height": self.height,
                "fps": self.fps,
                "bitrate": self.bitrate,
                "keyframe_interval": self.keyframe_interval,
                "frames": len(self.frames),
            }
        ).encode()
        parts = [_CLIP_MAGIC, struct.pack(">I", len(header)), header]
        for data in self.frames:
            parts += [struct.pack(">I", len(data)), data]
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(b"".join(parts))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> EncodedClip:
        raw = path.read_bytes()
        if not raw.startswith(_CLIP_MAGIC):
            raise ValueError(f"{path}: not a qkdmeet clip")
        pos = len(_CLIP_MAGIC)

        def take(n: int) -> bytes:
            nonlocal pos
            if pos + n > len(raw):
                raise ValueError(f"{path}: truncated clip")
            chunk = raw[pos : pos + n]
            pos += n
            return chunk

        header = json.loads(take(struct.unpack(">I", take(4))[0]))
        frames = tuple(take(struct.unpack(">I", take(4))[0]) for _ in range(int(header["frames"])))
        return cls(
            width=int(header["width"]),
            height=int(header["height"]),
            fps=float(header["fps"]),
            bitrate=int(header["bitrate"]),
            keyframe_interval=int(header["keyframe_interval"]),
            frames=frames,
        )


def encode_clip(
    width: int = 640,
    height: int = 480,
    fps: float = 15.0,
    frames: int = 150,
    keyframe_interval: int = 30,
    bitrate: int = 800_000,
) -> EncodedClip:
    """Encode ``frames`` frames of the test pattern to VP8, once.

    The encoder settings are aiortc's (realtime CBR at ``bitrate``), with a
    forced keyframe every ``keyframe_interval`` frames (frame 0 included), so a
    late subscriber, or one whose PLI a replay cannot answer at once, waits at
    most ``keyframe_interval / fps`` seconds. Each frame carries its replay
    code (:func:`replay_counter`).
    """
    if not 2 <= frames <= MAX_CLIP_FRAMES or keyframe_interval <= 0:
        raise ValueError("bad clip length or keyframe interval")
    pattern = TestPatternTrack(width, height, fps)
    ticks = round(VIDEO_CLOCK / fps)
    codec: Any = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.bit_rate = bitrate
    codec.time_base = fractions.Fraction(1, VIDEO_CLOCK)
    codec.framerate = fractions.Fraction(fps).limit_denominator(1000)
    codec.gop_size = 3000  # keyframes only where forced
    codec.qmin, codec.qmax = 2, 56
    codec.options = {
        "bufsize": str(bitrate),
        "cpu-used": "-6",
        "deadline": "realtime",
        "lag-in-frames": "0",
        "minrate": str(bitrate),
        "maxrate": str(bitrate),
        "noise-sensitivity": "4",
        "overshoot-pct": "15",
        "partitions": "0",
        "static-thresh": "1",
        "undershoot-pct": "100",
    }
    codec.thread_count = min(2, os.cpu_count() or 1)
    out: list[bytes] = []
    for n in range(frames):
        y, uv = pattern._planes(n)
        y = y.copy()
        write_frame_code(y, replay_counter(n, frames), 0)
        frame = VideoFrame.from_ndarray(np.concatenate([y, uv]), format="yuv420p")
        frame.pts = n * ticks
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        if n % keyframe_interval == 0:
            frame.pict_type = av.video.frame.PictureType.I
        out += [bytes(p) for p in codec.encode(frame)]
    out += [bytes(p) for p in codec.encode(None)]
    if len(out) != frames:
        raise RuntimeError(f"VP8 encoder returned {len(out)} frames for {frames}")
    return EncodedClip(width, height, fps, bitrate, keyframe_interval, tuple(out))


_clip_lock = threading.Lock()
_clip_cache: dict[tuple[Any, ...], EncodedClip] = {}


def cached_clip(path: Path | None = None, **params: Any) -> EncodedClip:
    """:func:`encode_clip` once per process (and per ``path``, if given).

    With ``path``, a clip already stored there with the same parameters is
    loaded instead of encoded, and a new one is stored there.
    """
    key = (str(path), *sorted(params.items()))
    with _clip_lock:
        clip = _clip_cache.get(key)
        if clip is not None:
            return clip
        if path is not None and path.exists():
            clip = EncodedClip.load(path)
            made = {
                "width": clip.width,
                "height": clip.height,
                "fps": clip.fps,
                "frames": len(clip.frames),
                "keyframe_interval": clip.keyframe_interval,
                "bitrate": clip.bitrate,
            }
            if any(made[k] != v for k, v in params.items()):
                clip = None
        if clip is None:
            clip = encode_clip(**params)
            if path is not None:
                clip.save(path)
        _clip_cache[key] = clip
        return clip


class ReplayVideoTrack(MediaStreamTrack):
    """A camera that replays a pre-encoded clip: ``recv()`` yields VP8 ``av.Packet``s.

    Frames leave at the clip's frame rate with continuous pts (90 kHz), the
    clip looping forever; aiortc's sender only packetises them (give it a
    pack-only encoder). A replay cannot make a keyframe on demand:
    :meth:`request_keyframe` (wire it to the sender's PLI/FIR handler) is
    counted and served by the clip's next periodic keyframe.
    """

    kind = "video"

    def __init__(self, clip: EncodedClip) -> None:
        super().__init__()
        self.clip = clip
        self.width, self.height, self.fps = clip.width, clip.height, clip.fps
        self.frames_sent = 0
        self.keyframe_requests = 0
        self._start: float | None = None
        self._time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self._ticks = round(VIDEO_CLOCK / clip.fps)

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1

    async def recv(self) -> av.Packet[Any]:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        n = self.frames_sent
        delay = self._start + n / self.fps - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        packet = av.Packet(self.clip.frames[n % len(self.clip.frames)])
        packet.pts = n * self._ticks
        packet.time_base = self._time_base
        self.frames_sent += 1
        return packet


def encode_tone_clip(frames: int = 50, bitrate: int = 40_000) -> tuple[bytes, ...]:
    """``frames`` 20 ms Opus packets of the :class:`ToneTrack` tone (50 = one second).

    The tone's one-second sample buffer loops cleanly, so the packets do too.
    Encoded once with aiortc's Opus settings (VoIP mode) at ``bitrate``.
    """
    from aiortc.codecs.opus import OpusEncoder

    if frames <= 0:
        raise ValueError("an audio clip needs at least one frame")
    encoder = OpusEncoder()
    encoder.codec.bit_rate = bitrate
    tone = ToneTrack()
    samples = tone._second
    out: list[bytes] = []
    n = 0
    while len(out) < frames:  # the encoder holds back its first frame(s)
        offset = (n * AUDIO_SAMPLES) % AUDIO_RATE
        frame = AudioFrame.from_ndarray(
            samples[offset : offset + AUDIO_SAMPLES].reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = AUDIO_RATE
        frame.pts = n * AUDIO_SAMPLES
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        payloads, _ = encoder.encode(frame)
        out += payloads
        n += 1
    return tuple(out[:frames])


_tone_lock = threading.Lock()
_tone_cache: dict[tuple[int, int], tuple[bytes, ...]] = {}


def cached_tone_clip(frames: int = 50, bitrate: int = 40_000) -> tuple[bytes, ...]:
    """:func:`encode_tone_clip` once per process."""
    with _tone_lock:
        clip = _tone_cache.get((frames, bitrate))
        if clip is None:
            clip = _tone_cache[(frames, bitrate)] = encode_tone_clip(frames, bitrate)
        return clip


class ReplayAudioTrack(MediaStreamTrack):
    """Pre-encoded audio: loops 20 ms Opus packets as ``av.Packet``s (48 kHz pts).

    ``level`` is the packets' RFC 6464 audio level in dBov (the tone's: its
    sender puts it in each packet's header extension, as a browser does);
    ``muted`` sends :data:`OPUS_SILENCE` at the silence level instead."""

    kind = "audio"

    def __init__(self, packets: tuple[bytes, ...], level: int | None = None) -> None:
        super().__init__()
        if not packets:
            raise ValueError("an audio clip needs at least one packet")
        self.packets = packets
        self.muted = False
        self._level = tone_level_dbov() if level is None else level
        self.frames_sent = 0
        self._start: float | None = None
        self._time_base = fractions.Fraction(1, AUDIO_RATE)

    async def recv(self) -> av.Packet[Any]:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        n = self.frames_sent
        delay = self._start + n * AUDIO_SAMPLES / AUDIO_RATE - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        packet = av.Packet(OPUS_SILENCE if self.muted else self.packets[n % len(self.packets)])
        packet.pts = n * AUDIO_SAMPLES
        packet.time_base = self._time_base
        self.frames_sent += 1
        return packet

    @property
    def level(self) -> int:
        """The audio level (dBov, 0 loudest, -127 silence) of the packet just sent."""
        return -SILENCE_LEVEL_DBOV if self.muted else self._level


def tone_level_dbov() -> int:
    """The audio level of the :class:`ToneTrack` tone (about -15 dBov)."""
    t = np.arange(AUDIO_SAMPLES) / AUDIO_RATE
    return level_dbov(TONE_AMPLITUDE * np.sin(2 * np.pi * 440.0 * t))

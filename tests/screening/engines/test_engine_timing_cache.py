"""The shared timing cache: loaded once, merged back under a lock, never written back once rejected.

TensorRT's builder config is stood in for by ``FakeConfig``, which behaves as the real one does
for what ``TimingCache`` uses: caches are bytes, a cache made on another device is refused by
``set_timing_cache`` and by ``combine``, and bytes it cannot read raise.
"""

import json
import threading
import time

import pytest

from stalled_share import BUDGET_S, STALL_CAP_S, within
from screening.engines.timing_cache import TimingCache, file_lock
from screening.errors import InputError


class FakeCache:
    def __init__(self, entries: dict, device: str) -> None:
        self.entries, self.device = dict(entries), device

    def serialize(self) -> bytes:
        return json.dumps({"device": self.device, "entries": self.entries}, sort_keys=True).encode()

    def combine(self, other: "FakeCache", ignore_mismatch: bool) -> bool:
        if other.device != self.device and not ignore_mismatch:
            return False
        for key, value in other.entries.items():
            self.entries.setdefault(key, value)
        return True


class FakeConfig:
    def __init__(self, device: str = "h100") -> None:
        self.device, self.attached = device, None

    def create_timing_cache(self, data: bytes) -> FakeCache:
        if not data:
            return FakeCache({}, self.device)
        loaded = json.loads(data)  # raises ValueError on bytes it cannot read, as TensorRT raises
        return FakeCache(loaded["entries"], loaded["device"])

    def set_timing_cache(self, cache: FakeCache, ignore_mismatch: bool) -> bool:
        if cache.device != self.device and not ignore_mismatch:
            return False
        self.attached = cache
        return True


def build(cache: TimingCache, *timings: str, device: str = "h100") -> list[FakeConfig]:
    """Attach to two configs (segmenter, classifier) and record one timing per name, as builds do."""
    configs = [FakeConfig(device), FakeConfig(device)]
    for config, name in zip(configs, timings or ("seg", "cls")):
        cache.attach(config)
        if config.attached is not None:
            config.attached.entries[name] = 1.0
    return configs


def test_first_build_creates_the_cache_and_the_next_one_loads_it(tmp_path):
    path, lines = tmp_path / "gpu.timing-cache", []
    first = TimingCache(path, lines.append)
    configs = build(first)
    assert configs[0].attached is configs[1].attached  # one cache for both models
    assert first.save() and json.loads(path.read_bytes())["entries"] == {"seg": 1.0, "cls": 1.0}
    second = TimingCache(path, lines.append)
    configs = build(second, "seg2")
    assert lines == [f"  timing cache: {path}"]
    assert configs[0].attached.entries == {"seg": 1.0, "cls": 1.0, "seg2": 1.0}


def test_a_cache_tensorrt_rejects_is_never_written_back(tmp_path):
    path, lines = tmp_path / "gpu.timing-cache", []
    path.write_bytes(FakeCache({"old": 2.0}, "a100").serialize())  # another device, same name
    before = path.read_bytes()
    cache = TimingCache(path, lines.append)
    configs = build(cache)
    assert configs[0].attached.entries == {"seg": 1.0, "cls": 1.0}  # built with a fresh cache
    assert cache.save() is False and path.read_bytes() == before
    assert lines == [f"  TensorRT rejected the timing cache {path} (made on another device or damaged): building "
                     f"without it; the file is left as it is (delete it to start a new one)"]


def test_an_unreadable_cache_is_left_alone_too(tmp_path):
    path, lines = tmp_path / "gpu.timing-cache", []
    path.write_bytes(b"\x00not a cache")
    cache = TimingCache(path, lines.append)
    build(cache)
    assert cache.save() is False and path.read_bytes() == b"\x00not a cache"
    assert lines[0].startswith(f"  TensorRT rejected the timing cache {path}")


def test_two_builds_at_once_both_keep_their_timings(tmp_path):
    path = tmp_path / "gpu.timing-cache"
    one, two = TimingCache(path, print), TimingCache(path, print)
    build(one, "a-seg", "a-cls")
    build(two, "b-seg", "b-cls")  # both loaded the same (missing) file
    assert one.save() and two.save()
    assert set(json.loads(path.read_bytes())["entries"]) == {"a-seg", "a-cls", "b-seg", "b-cls"}


def test_saving_waits_for_the_lock(tmp_path):
    path = tmp_path / "gpu.timing-cache"
    cache = TimingCache(path, print)
    build(cache)
    saver = threading.Thread(target=cache.save)
    with file_lock(cache.lock_path):
        saver.start()
        time.sleep(0.3)
        assert saver.is_alive() and not path.exists()  # blocked while another process holds the lock
    saver.join(10)
    assert not saver.is_alive() and path.exists()


def cache_stalled(path) -> str:
    return (f"the timing cache {path} stopped answering while it was being read (nothing for {BUDGET_S:g} s; "
            f"a stalled network drive?): run the same command again once the drive answers")


def test_a_timing_cache_that_does_not_answer_stops_the_build_with_one_line(tmp_path, share):
    """A cache folder on a network home that went silent: exit 2 with one line, not a build hung for ever."""
    path = tmp_path / "gpu.timing-cache"
    path.write_bytes(FakeCache({"old": 2.0}, "h100").serialize())
    share.stall_open(path)
    cache = TimingCache(path, print, stall_s=BUDGET_S)
    with pytest.raises(InputError) as raised:
        within(STALL_CAP_S / 2, lambda: cache.attach(FakeConfig()))
    assert str(raised.value) == cache_stalled(path)
    share.answer()  # the drive is back: the same cache loads
    assert build(TimingCache(path, print, stall_s=BUDGET_S))[0].attached.entries == {"old": 2.0, "seg": 1.0, "cls": 1.0}


def test_a_timing_cache_that_stops_answering_before_it_is_saved_stops_with_one_line(tmp_path, share):
    """Saving reads the file again to merge what another build saved meanwhile."""
    path = tmp_path / "gpu.timing-cache"
    cache = TimingCache(path, print, stall_s=BUDGET_S)
    build(cache)
    path.write_bytes(FakeCache({"other": 3.0}, "h100").serialize())  # another build saved meanwhile
    share.stall_open(path)
    with pytest.raises(InputError) as raised:
        within(STALL_CAP_S / 2, cache.save)
    assert str(raised.value) == cache_stalled(path)

"""One lock per profile: a second `kdstudy run` is turned away at once with one line, a lock left by a dead
process is taken over with a warning, and the lock is released however its block ends."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import warnings

import pytest

from kdlib.pipeline.lock import ProfileLocked, StaleLockWarning, lock_path, profile_lock

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOLD_S = 120  # the holder's sleep: the second run must be turned away long before it ends
HOLDER = ("import sys, time\n"
          "from kdlib.pipeline.lock import profile_lock\n"
          "with profile_lock('smoke', 'kdstudy run --params params/smoke.yaml'):\n"
          "    print('holding', flush=True)\n"
          "    time.sleep(float(sys.argv[1]))\n")


def test_a_second_run_of_the_profile_exits_2_at_once(reports_dir):
    env = dict(os.environ)  # KD_REPORTS_DIR and KD_CACHE_DIR point into tmp_path (the fixture)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(HOLD_S)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        start = time.monotonic()
        second = subprocess.run([sys.executable, "-m", "kdlib.cli", "run", "--params", "params/smoke.yaml",
                                 "--only", "00"], cwd=REPO, env=env, capture_output=True, text=True,
                                timeout=HOLD_S, check=False)
        took = time.monotonic() - start
        assert holder.poll() is None, "the holder ended before the second run did"
    finally:
        holder.kill()
        holder.wait()
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), second.stderr
    assert f"pid {holder.pid} " in lines[0] and "kdstudy run --params params/smoke.yaml" in lines[0]
    assert took < HOLD_S / 2
    assert sorted(p.name for p in (reports_dir / "smoke").iterdir()) == [".lock"]  # no step folder


def test_a_held_lock_turns_a_second_holder_away_in_one_line(reports_dir):
    with profile_lock("smoke", "kdstudy report --params params/smoke.yaml"), \
            pytest.raises(ProfileLocked) as refused, profile_lock("smoke", "kdstudy verdicts"):
        pytest.fail("two holders at once")
    message = str(refused.value)
    assert "\n" not in message
    assert f"pid {os.getpid()} " in message and "kdstudy report" in message and str(lock_path("smoke")) in message


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_warning(reports_dir):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: its pid names no process now
    path = lock_path("smoke")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"pid": gone.pid, "host": socket.gethostname(), "command": "kdstudy run",
                                "since": "2024-01-01T00:00:00+00:00"}))
    with pytest.warns(StaleLockWarning, match=rf"left by pid {gone.pid} .*now dead"), \
            profile_lock("smoke", "kdstudy run") as holder:
        assert json.loads(path.read_text())["pid"] == holder["pid"] == os.getpid()
    assert path.read_text() == ""  # released cleanly: the next holder has nothing to take over


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_the_lock_is_released_when_its_block_fails(reports_dir, error):
    with pytest.raises(error), profile_lock("smoke", "kdstudy run"):
        raise error("a notebook failed")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a released lock is taken without a warning
        with profile_lock("smoke", "kdstudy run"):
            pass

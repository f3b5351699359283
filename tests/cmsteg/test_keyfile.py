"""Key files: 0600 from creation, counters spent before use (locks, kills), parties, replays."""

import json
import multiprocessing
import os
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

from stegjax import errors
from stegjax.cmsteg import keyfile
from stegjax.stego import framing

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _mode(path):
  return stat.S_IMODE(os.stat(path).st_mode)


def test_created_0600_whatever_the_umask(tmp_path):
  old = os.umask(0)  # a umask that would leave a plain open() world-readable
  try:
    keyfile.create(str(tmp_path / "k.json"))
    keyfile.reserve(str(tmp_path / "new.json"), create_missing=True)
  finally:
    os.umask(old)
  assert _mode(tmp_path / "k.json") == 0o600 and _mode(tmp_path / "new.json") == 0o600
  assert _mode(str(tmp_path / "k.json") + ".lock") == 0o600


def test_unsafe_or_broken_files_are_one_clear_error(tmp_path):
  p = tmp_path / "k.json"
  p.write_text(json.dumps({"secret": "00" * 32, "counter": 0}))
  os.chmod(p, 0o644)
  with pytest.raises(errors.KeyFileError, match="chmod 600"):
    keyfile.load(str(p))
  os.chmod(p, 0o600)
  assert keyfile.load(str(p)).party == keyfile.DEFAULT_PARTY  # version-1 files still load
  p.write_text("{not json")
  with pytest.raises(errors.KeyFileError, match="JSON"):
    keyfile.load(str(p))
  with pytest.raises(errors.KeyFileError, match="not found"):
    keyfile.load(str(tmp_path / "none.json"))
  with pytest.raises(errors.KeyFileError, match="already exists"):
    keyfile.create(str(p))


def _reserve_many(path, n, queue, start):
  start.wait()  # both processes imported: now they race for the lock
  queue.put([keyfile.reserve(path)[1] for _ in range(n)])


def test_concurrent_processes_get_different_counters(tmp_path):
  path = str(tmp_path / "k.json")
  keyfile.create(path)
  ctx = multiprocessing.get_context("spawn")
  queue, start = ctx.Queue(), ctx.Barrier(2)
  procs = [ctx.Process(target=_reserve_many, args=(path, 30, queue, start)) for _ in range(2)]
  for p in procs:
    p.start()
  got = [c for _ in procs for c in queue.get(timeout=120)]
  for p in procs:
    p.join(timeout=60)
  assert sorted(got) == list(range(60))  # every counter handed out exactly once
  assert keyfile.load(path).counter == 60


_RESERVE_THEN_HANG = """
import sys, time
from stegjax.cmsteg import keyfile
kf, c = keyfile.reserve(sys.argv[1])
print(c, flush=True)
time.sleep(120)  # "generating": killed here
"""


def test_a_killed_embed_never_leaves_its_counter_reusable(tmp_path):
  path = str(tmp_path / "k.json")
  keyfile.create(path)
  keyfile.reserve(path)  # counter 0 used
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  proc = subprocess.Popen(
    [sys.executable, "-c", _RESERVE_THEN_HANG, path], stdout=subprocess.PIPE, text=True, env=env
  )
  taken = int(proc.stdout.readline())
  proc.send_signal(signal.SIGKILL)
  proc.wait(timeout=30)
  assert taken == 1
  assert keyfile.reserve(path)[1] == 2  # the killed run's counter stays spent


def test_kill_during_reserve_loop_leaves_a_valid_file(tmp_path):
  path = str(tmp_path / "k.json")
  keyfile.create(path)
  code = "import sys\nfrom stegjax.cmsteg import keyfile\nwhile True:\n"
  code += "  print(keyfile.reserve(sys.argv[1])[1], flush=True)\n"
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  proc = subprocess.Popen(
    [sys.executable, "-c", code, path], stdout=subprocess.PIPE, text=True, env=env
  )
  seen = [int(proc.stdout.readline()) for _ in range(20)]
  time.sleep(0.2)
  proc.send_signal(signal.SIGKILL)
  rest = proc.stdout.read().split()
  proc.wait(timeout=30)
  handed = seen + [int(x) for x in rest]
  assert keyfile.reserve(path)[1] > max(handed)  # never a counter already handed out


def test_parties_have_separate_counter_spaces(tmp_path):
  a_path, b_path = str(tmp_path / "a.json"), str(tmp_path / "b.json")
  keyfile.create(a_path, party="alice")
  b = keyfile.share(a_path, b_path, "bob")
  a = keyfile.load(a_path)
  assert a.secret == b.secret and a.party != b.party and _mode(b_path) == 0o600
  assert "bob" in a.senders() and "alice" in b.senders()
  with pytest.raises(errors.KeyFileError, match="already used"):
    keyfile.share(a_path, str(tmp_path / "c.json"), "bob")
  # The sender's message 0 and the receiver's reply 0 share a counter but not a key stream.
  _, ca = keyfile.reserve(a_path)
  _, cb = keyfile.reserve(b_path)
  assert ca == cb == 0
  m1, m2 = b"attack at dawn!!", b"retreat at nine!"
  x = framing.pack(m1, keyfile.party_secret(a.secret, a.party), ca)
  y = framing.pack(m2, keyfile.party_secret(b.secret, b.party), cb)
  plain_xor = framing.bytes_to_bits(bytes(p ^ q for p, q in zip(m1, m2)))
  body = slice(framing.HEADER_BITS, framing.HEADER_BITS + 8 * len(m1))
  assert not np.array_equal(x[: framing.HEADER_BITS], y[: framing.HEADER_BITS])
  assert not np.array_equal(x[body] ^ y[body], plain_xor)
  # Positive control: one party secret reused with one counter leaks the plaintexts' XOR.
  z = framing.pack(m2, keyfile.party_secret(a.secret, a.party), ca)
  np.testing.assert_array_equal(x[body] ^ z[body], plain_xor)


def test_replay_window_matches_a_set_of_accepted_counters(tmp_path):
  path = str(tmp_path / "k.json")
  keyfile.create(path)
  rs = np.random.RandomState(0)
  accepted, top = set(), -1
  for c in rs.randint(0, 300, 600):
    c = int(c)
    fresh = c not in accepted and (c > top or top - c < keyfile.WINDOW)
    if fresh:
      keyfile.accept(path, "b", c)
      accepted.add(c)
      top = max(top, c)
    else:
      with pytest.raises(errors.ReplayError, match="replayed image rejected"):
        keyfile.accept(path, "b", c)
  assert keyfile.load(path).peers["b"]["top"] == top
  # Another sender's counters are tracked apart.
  keyfile.accept(path, "c", top)


def test_candidates_cover_the_window_and_the_next_counters(tmp_path):
  path = str(tmp_path / "k.json")
  keyfile.create(path, party="b")
  keyfile.accept(path, "a", 20)
  got = dict(keyfile.candidates(keyfile.load(path), 4))
  assert got["a"] == list(range(17, 25)) and got["b"] == [0, 1, 2, 3]

"""Report section for real messages across images (what ``evaluate_messages`` measured)."""

from __future__ import annotations

from stegjax.metrics import report


def _pct(x: float) -> str:
  return f"{100 * x:.0f}%"


def _how(how: dict) -> str:
  return ", ".join(f"{k} {v}" for k, v in sorted(how.items())) or "-"


def _prepared(res) -> list[str]:
  return list(res.get("prepared_channels", [res["prepared_channel"]]))


def table(res) -> str:
  rows = []
  for name, r in res["channels"].items():
    note = " (prepared)" if name in _prepared(res) else ""
    rows.append(
      [
        name + note,
        _pct(r["message_ok"]),
        f"{r['images_used']:.1f}",
        _how(r["how"]),
        f"{r['list_candidates']:.0f}",
        f"{r['seconds_per_image']:.1f}",
      ]
    )
  lost = res["lost"]
  rows.append(
    [
      f"{lost['channel']}, {lost['lost']} image(s) deleted",
      _pct(lost["message_ok"]),
      f"{lost['images_used']:.1f}",
      _how(lost["how"]),
      f"{lost['list_candidates']:.0f}",
      f"{lost['seconds_per_image']:.1f}",
    ]
  )
  head = [
    "channel",
    "message ok",
    "images verified",
    "how images were read",
    "list candidates / message",
    "receiver s/image",
  ]
  return report.md_table(head, rows)


def _others(res) -> str:
  other = {k: v for k, v in res["channels"].items() if k not in _prepared(res)}
  if not other:
    return ""
  ok = sum(v["message_ok"] for v in other.values()) / len(other)
  return (
    f" On the channels the sender did not prepare for ({', '.join(other)}), "
    f"{_pct(ok)} of messages came back on average."
  )


def _prepared_text(res) -> str:
  first, *rest = _prepared(res)
  if not rest:
    return f"{first} only"
  return f"{first} and, within the caption's capacity, {', '.join(rest)}"


def captions(c) -> str:
  ex = "\n".join(f"{i}. `{t.strip()[:160]}`" for i, t in enumerate(c["examples"]))
  corpus = c["corpus"]
  return (
    f"Word-level caption LM over a {c['vocabulary']}-token vocabulary of the WordNet 3.0 "
    f"glosses ({corpus['train_lines']} training lines made only of vocabulary words, "
    f"{corpus['train_tokens']} tokens; {corpus['heldout_lines']} held-out lines). Held-out "
    f"perplexity {c['heldout_perplexity']:.1f} per token. Captions of "
    f"{c['words_per_caption']} tokens ({c['chars_per_caption']:.0f} characters on average) "
    f"carry {c['payload_bits_per_caption']['mean']:.0f} payload bits each (min "
    f"{c['payload_bits_per_caption']['min']:.0f}). Words of these captions found in the "
    f"corpus: {_pct(c['words_in_corpus'])}; every caption re-tokenizes to the ids drawn: "
    f"{'yes' if c['retokenize_exact'] else 'NO'}.\n\n" + ex
  )


def section(res) -> str:
  ipm = res["images_per_message"]
  errs = sorted({e for r in res["channels"].values() for e in r["errors"]})
  return (
    f"{res['messages']} message(s) of {res['message_bytes']} random bytes, each one AEAD frame "
    f"cut into {res['k']} shares plus {res['redundancy']} parity share(s) (zfec), one chunk "
    f"of {res['payload_bits_per_image']} payload bits ({res['chunk_bits']} with header and "
    f"tag) per image: {ipm['mean']:.1f} images per message (max {ipm['max']:.0f}; "
    f"{res['short_images']} image(s) carried less than a chunk and were sent anyway, the "
    f"chunk going again), {res['message_bits_per_image']:.0f} message bits per image "
    f"(images carry {res['carried_bits']['mean']:.0f} bits on average). Corrections were "
    f"prepared for {_prepared_text(res)} (each names the true token by its rank in the "
    "prior's order, so it holds through any channel); the receiver is not told the channel "
    "(M2's stand-in is what the file implies: a JPEG's quality from its quantization "
    "tables, none for a PNG), takes the images in a shuffled order, "
    "tries each caption's corrections and none, and list-decodes an image whose chunk tag "
    f"fails.{_others(res)} Sender {res['send_seconds_per_image']:.1f} s per image.\n\n"
    + table(res)
    + ("\n\nReceiver errors: " + "; ".join(e[:200] for e in errs) if errs else "")
    + "\n\n### Captions\n\n"
    + captions(res["captions"])
  )

"""Builds the vendored caption corpus for CMSTEG M3 from Debian's `wordnet-base`.

  apt-get install wordnet-base && python scripts/make_caption_corpus.py

Writes stegjax/data/captions/wordnet_glosses.txt.gz (one lower-cased gloss or example
phrase per line, from the noun and adjective synsets) and LICENSE.wordnet beside it.
Run once by maintainers; a fresh clone needs no apt.
"""

import gzip
import os
import re
import shutil

SRC = "/usr/share/wordnet"
OUT = os.path.join(os.path.dirname(__file__), "..", "stegjax", "data", "captions")
ALLOWED = re.compile(r"[^a-z ,.'\-]")


def lines(path):
  with open(path, encoding="latin-1") as f:
    for row in f:
      if row.startswith("  ") or "|" not in row:
        continue  # licence header
      gloss = row.split("|", 1)[1].strip()
      for part in gloss.split(";"):
        part = part.strip().strip('"').lower()
        part = ALLOWED.sub("", part)
        part = re.sub(r"\s+", " ", part).strip()
        if 12 <= len(part) <= 160:
          yield part


def main():
  os.makedirs(OUT, exist_ok=True)
  seen, kept = set(), []
  for pos in ("noun", "adj"):
    for s in lines(os.path.join(SRC, f"data.{pos}")):
      if s not in seen:
        seen.add(s)
        kept.append(s)
  with gzip.open(os.path.join(OUT, "wordnet_glosses.txt.gz"), "wt", compresslevel=9) as f:
    f.write("\n".join(kept) + "\n")
  shutil.copy("/usr/share/doc/wordnet-base/copyright", os.path.join(OUT, "LICENSE.wordnet"))
  print(f"{len(kept)} lines")


if __name__ == "__main__":
  main()

"""Builds the vendored caption corpus for CMSTEG M3 from Debian's `wordnet-base`.

  apt-get install wordnet-base && python scripts/make_caption_corpus.py

Writes stegjax/data/captions/wordnet_glosses.txt.gz, one line per gloss or example phrase
of the noun and adjective synsets: ``topic<TAB>lemma: text`` (lower-cased; the topic is the
synset's WordNet lexicographer file, e.g. noun.animal), and LICENSE.wordnet beside it.
Run once by maintainers; a fresh clone needs no apt.
"""

import gzip
import os
import re
import shutil

SRC = "/usr/share/wordnet"
OUT = os.path.join(os.path.dirname(__file__), "..", "stegjax", "data", "captions")
ALLOWED = re.compile(r"[^a-z ,.'\-]")


def lexnames():
  with gzip.open("/usr/share/man/man5/lexnames.5WN.gz", "rt") as f:
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"^(\d\d)\s+(\S+)", f.read(), re.M)}


def clean(text):
  text = ALLOWED.sub("", text.strip().strip('"').lower().replace("_", " "))
  return re.sub(r"\s+", " ", text).strip()


def lines(path, names):
  with open(path, encoding="latin-1") as f:
    for row in f:
      if row.startswith("  ") or "|" not in row:
        continue  # licence header
      fields, gloss = row.split("|", 1)
      fields = fields.split()
      topic, lemma = names[int(fields[1])], clean(fields[4])
      for part in gloss.split(";"):
        part = clean(part)
        if 12 <= len(part) <= 160:
          yield f"{topic}\t{lemma}: {part}"


def main():
  os.makedirs(OUT, exist_ok=True)
  seen, kept, names = set(), [], lexnames()
  for pos in ("noun", "adj"):
    for s in lines(os.path.join(SRC, f"data.{pos}"), names):
      if s not in seen:
        seen.add(s)
        kept.append(s)
  with gzip.open(os.path.join(OUT, "wordnet_glosses.txt.gz"), "wt", compresslevel=9) as f:
    f.write("\n".join(kept) + "\n")
  shutil.copy("/usr/share/doc/wordnet-base/copyright", os.path.join(OUT, "LICENSE.wordnet"))
  print(f"{len(kept)} lines")


if __name__ == "__main__":
  main()

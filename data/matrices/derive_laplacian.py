"""Graph Laplacian L = D - A of a METIS graph file as a gzipped Matrix Market file (lower
triangle, integer field, symmetric).

Used for `copter2_laplacian.mtx.gz` from METIS 5.1.0's test graph `copter2.graph` (Apache-2.0),
as shipped in Debian's `libmetis-doc` package (5.1.0.dfsg-7):
    apt-get download libmetis-doc && dpkg -x libmetis-doc_*.deb x
    python3 derive_laplacian.py x/usr/share/doc/libmetis-dev/examples/graphs/copter2.graph \
        copter2_laplacian.mtx.gz
"""
import gzip
import sys

src, dst = sys.argv[1], sys.argv[2]
with open(src) as f:
    lines = [l for l in f if not l.startswith('%')]
n, m = map(int, lines[0].split()[:2])
adj = [list(map(int, l.split())) for l in lines[1:n + 1]]
entries = []
for i, nb in enumerate(adj):
    entries.append((i + 1, i + 1, len(nb)))
    for j in nb:
        if j < i + 1:
            entries.append((i + 1, j, -1))
entries.sort(key=lambda e: (e[1], e[0]))
with gzip.open(dst, 'wt', compresslevel=9) as f:
    f.write('%%MatrixMarket matrix coordinate integer symmetric\n')
    f.write(f'% graph Laplacian D - A of {src.split("/")[-1]} (METIS 5.1.0 test graph, Apache-2.0)\n')
    f.write(f'{n} {n} {len(entries)}\n')
    for i, j, v in entries:
        f.write(f'{i} {j} {v}\n')
print(n, m, len(entries))

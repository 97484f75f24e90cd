"""Graph Laplacian L = D - A of a METIS graph file, or of the vertex graph of a MEDIT mesh
(two vertices adjacent when they share an element), as a gzipped Matrix Market file (lower
triangle, integer field, symmetric). Vertices keep the numbering of the input file.

Used for `copter2_laplacian.mtx.gz` from METIS 5.1.0's test graph `copter2.graph` (Apache-2.0),
as shipped in Debian's `libmetis-doc` package (5.1.0.dfsg-7):
    apt-get download libmetis-doc && dpkg -x libmetis-doc_*.deb x
    python3 derive_laplacian.py x/usr/share/doc/libmetis-dev/examples/graphs/copter2.graph \
        copter2_laplacian.mtx.gz

and for `cube_big_tetra_laplacian.mtx.gz` from SfePy's tetrahedral mesh `cube_big_tetra.mesh`
(BSD-3-Clause), as shipped in Debian's `python3-sfepy` package (2021.4-4+b1):
    apt-get download python3-sfepy && dpkg -x python3-sfepy_*.deb x
    python3 derive_laplacian.py \
        x/usr/lib/python3/dist-packages/sfepy/meshes/3d/cube_big_tetra.mesh \
        cube_big_tetra_laplacian.mtx.gz
and likewise `cube_cylinder_laplacian.mtx.gz` from `meshes/3d/special/cube_cylinder.mesh` of the
same package.
"""
import gzip
import sys

# Vertices per element of the MEDIT element sections.
MEDIT_ELEMENTS = {'edges': 2, 'triangles': 3, 'quadrilaterals': 4, 'tetrahedra': 4,
                  'hexahedra': 8, 'prisms': 6, 'pyramids': 5}


def metis_graph(path):
    """Neighbour lists (1-based) of a METIS graph file."""
    with open(path) as f:
        lines = [l for l in f if not l.startswith('%')]
    n = int(lines[0].split()[0])
    return [list(map(int, l.split())) for l in lines[1:n + 1]]


def medit_mesh(path):
    """Neighbour lists (1-based) of the vertex graph of a MEDIT .mesh file: every pair of
    vertices of an element is an edge (the pattern of a P1/Q1 finite-element matrix)."""
    with open(path) as f:
        tok = f.read().split()
    n, nbrs, i = None, None, 0
    while i < len(tok):
        key = tok[i].lower()
        if key == 'vertices':
            n = int(tok[i + 1])
            nbrs = [set() for _ in range(n)]
            i += 2 + n * 4  # dimension 3: x y z ref (dimension 2 files are not handled)
        elif key in MEDIT_ELEMENTS:
            m, k = int(tok[i + 1]), MEDIT_ELEMENTS[key]
            i += 2
            for e in range(m):
                vs = [int(t) for t in tok[i + e * (k + 1):i + e * (k + 1) + k]]
                for a in vs:
                    nbrs[a - 1].update(b for b in vs if b != a)
            i += m * (k + 1)
        else:
            i += 1
    return [sorted(s) for s in nbrs]


src, dst = sys.argv[1], sys.argv[2]
adj = medit_mesh(src) if src.endswith('.mesh') else metis_graph(src)
n = len(adj)
entries = []
for i, nb in enumerate(adj):
    entries.append((i + 1, i + 1, len(nb)))
    for j in nb:
        if j < i + 1:
            entries.append((i + 1, j, -1))
entries.sort(key=lambda e: (e[1], e[0]))
what = 'METIS 5.1.0 test graph, Apache-2.0' if not src.endswith('.mesh') else \
    'vertex graph of the SfePy mesh, BSD-3-Clause'
with gzip.open(dst, 'wt', compresslevel=9) as f:
    f.write('%%MatrixMarket matrix coordinate integer symmetric\n')
    f.write(f'% graph Laplacian D - A of {src.split("/")[-1]} ({what})\n')
    f.write(f'{n} {n} {len(entries)}\n')
    for i, j, v in entries:
        f.write(f'{i} {j} {v}\n')
print(n, sum(len(nb) for nb in adj) // 2, len(entries))

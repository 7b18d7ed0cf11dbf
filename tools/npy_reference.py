#!/usr/bin/python3
"""Writes .npy files with numpy's own writer for tests/data/npy_test.cc.

Usage: npy_reference.py OUT_DIR. Every element type holds 0, 1, ..., 11 in shape (3, 2, 2)
(b1: i % 2; floating types -0.5 at element 1); version2.npy uses a 4-byte header length;
fortran.npy, bigendian.npy, structured.npy and object.npy are files the reader must refuse.
"""
import os
import sys

import numpy as np

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for t in ["f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1"]:
    a = np.arange(12)
    a = (a % 2).astype(np.bool_) if t == "b1" else a.astype("<" + t)
    if t[0] == "f":
        a[1] = -0.5
    np.save(os.path.join(out, t + ".npy"), a.reshape(3, 2, 2))
with open(os.path.join(out, "version2.npy"), "wb") as f:
    np.lib.format.write_array(f, np.arange(5, dtype="<f4").reshape(5, 1), version=(2, 0))
np.save(os.path.join(out, "fortran.npy"), np.asfortranarray(np.ones((3, 4), dtype="<f4")))
np.save(os.path.join(out, "bigendian.npy"), np.ones((3, 4), dtype=">f4"))
np.save(os.path.join(out, "structured.npy"), np.zeros(3, dtype=[("a", "<f4"), ("b", "<i4")]))
np.save(os.path.join(out, "object.npy"), np.array([1, "x"], dtype=object), allow_pickle=True)
print("wrote", len(os.listdir(out)), "arrays to", out)

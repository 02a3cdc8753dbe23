"""Pure PKI objects: keys, names, CSRs (Expressway SAN rules), issuing, CRLs, decode, convert.

No I/O here: every function takes bytes/objects and returns bytes/objects. Time is a parameter.
"""

"""Build cellvec's gene and reference collections."""

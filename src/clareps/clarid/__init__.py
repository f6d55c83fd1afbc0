"""CLARID: the Jacobian subspace engine, projection and canonical bank building."""

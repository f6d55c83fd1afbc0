"""CLARID: the Jacobian subspace engine, the directions and their controls, projection and guided decoding
(the banks it builds are ``clareps.bank``)."""

"""Completeness checks, automatic replies and the loop guard that keeps them safe."""

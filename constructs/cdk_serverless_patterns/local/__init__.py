"""The embedded local AWS emulator (moto server) and the small adapters for what moto lacks.

Sits on top of the constructs: nothing in core or a pattern package imports it.
"""

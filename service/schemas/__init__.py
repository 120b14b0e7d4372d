"""Pydantic request/response models. Guest-facing models live in `guest.py`, apart from the
toolstack's, so that a pnode can never reach a guest response by accident."""

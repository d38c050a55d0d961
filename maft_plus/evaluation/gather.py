"""Gathering lists from every process of a distributed evaluation."""

from itertools import chain

from detectron2.utils import comm


def all_gather_list(items: list) -> list:
    """Every process's ``items`` concatenated in rank order, on every process (a collective)."""
    return list(chain.from_iterable(comm.all_gather(items)))

"""Datasets: readers of official release layouts, splits, decoding, the fast patch loader, demo data."""

from swiniqa.data.records import READERS, DatasetInfo, Record, read_dataset, register_reader
# Registers the built-in readers. Here, not in records.py: the readers import records (register_reader), so
# records importing them back was an import cycle; every import of a swiniqa.data module runs this first.
from swiniqa.data import readers  # noqa: F401
from swiniqa.data.splits import split_dataset, split_records

__all__ = ["Record", "DatasetInfo", "READERS", "read_dataset", "register_reader", "split_dataset", "split_records"]

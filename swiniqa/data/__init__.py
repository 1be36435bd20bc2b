"""Datasets: readers of official release layouts, splits, decoding, the fast patch loader, demo data."""

from swiniqa.data.records import READERS, DatasetInfo, Record, read_dataset, register_reader
from swiniqa.data.splits import split_dataset, split_records

__all__ = ["Record", "DatasetInfo", "READERS", "read_dataset", "register_reader", "split_dataset", "split_records"]

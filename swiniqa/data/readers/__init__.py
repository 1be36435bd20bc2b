"""Built-in dataset readers; importing this package registers them (see ``records.READERS``)."""

from swiniqa.data.readers import agiqa, csv_reader, demo, kadid, koniq, livec, spaq, tid2013  # noqa: F401

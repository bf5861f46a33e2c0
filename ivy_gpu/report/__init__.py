"""What a person looks at: per-video figures, gauge records and the batch report.

``figures`` (PNG figures on their own Agg canvas, written atomically; matplotlib loads on
first draw), ``record`` (measurement times, gauge records from NWIS RDB or time,value CSV,
joined in time) and ``page`` (``report.html``: one self-contained page per batch, rebuilt from
the saved results).

May import: the core modules only (it reads what the pipeline saved, not the pipeline).
"""

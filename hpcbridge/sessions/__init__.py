"""Session records (issue K): see ``record.py`` for the format, ``capture.py`` for the
job's part, ``complete.py`` for the end, docs/sessions.md for the schema. Importing
this package imports nothing else: the job's launcher uses it before the server starts.
"""

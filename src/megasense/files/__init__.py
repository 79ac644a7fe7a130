"""Files, the bottom layer: tables of texts in every supported format (read in chunks, written atomically),
the one atomic writer for files and directories, the one progress bar and the one JSONL log."""

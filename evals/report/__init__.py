"""Reports: a small document model (Markdown + self-contained HTML) and the main job's report."""

"""``scorer bench``: the runner (variants side by side), the child processes it measures in, and the report.
May import: stream_worker.tools and every package below it; nothing imports the benchmark but the CLI."""

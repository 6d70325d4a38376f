"""`fowld --stdio`: one session driven by JSON lines on stdin and stdout."""

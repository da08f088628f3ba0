"""The chat page (`app.py`): layout, handlers, rendering, access control and start-up, over `rag.Engine`."""

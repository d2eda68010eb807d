"""The demo's pages; each has `render(session)`."""

"""Feed ingestion: fetch bytes, parse them, clean the HTML, store briefings."""

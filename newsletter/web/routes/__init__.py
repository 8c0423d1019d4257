"""The web app's routes by area: what readers do from links in mail, the signup form, the
preference centre, the archive."""

"""gunicorn's access lines without what a path may carry: an order page's token, a card number a caller typed
into a URL, an email in a query (storefront.scrub). deploy/gunicorn.conf.py names this class as its logger."""

from gunicorn.glogging import Logger

from storefront.scrub import scrub_text

SCRUBBED_ATOMS = ("r", "U", "q", "f", "{raw_uri}e", "{path_info}e", "{query_string}e", "{http_referer}e", "{referer}i")


class ScrubbedAccessLogger(Logger):
    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for name in SCRUBBED_ATOMS:
            if isinstance(atoms.get(name), str):
                atoms[name] = scrub_text(atoms[name])
        return atoms

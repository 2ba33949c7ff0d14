"""Django's cached_db sessions, going on with the database alone while Redis is away.

Django's own engine already reads through a cache error, but raises on the writes around it (caching what it
loaded, checking a new session key, deleting at logout), so every page with a session answered 500 while Redis
was down. Here each cache call goes through storefront.outages' breaker: the database is the record, the cache
only a copy, and an outage is logged once per process.
"""

from django.contrib.sessions.backends.cached_db import SessionStore as CachedDBStore
from django.contrib.sessions.backends.db import SessionStore as DBStore

from storefront.outages import cache_guarded


class SessionStore(CachedDBStore):
    def load(self):
        data = cache_guarded(lambda: self._cache.get(self.cache_key), doing="reading a session")
        if data is not None:
            return data
        stored = self._get_session_from_db()
        if not stored:
            return {}
        data = self.decode(stored.session_data)
        expiry = self.get_expiry_age(expiry=stored.expire_date)
        cache_guarded(lambda: self._cache.set(self.cache_key, data, expiry), doing="caching a session")
        return data

    def exists(self, session_key):
        if not session_key:
            return False
        cached = cache_guarded(lambda: (self.cache_key_prefix + session_key) in self._cache, doing="checking a session")
        return bool(cached) or DBStore.exists(self, session_key)

    def save(self, must_create=False):
        DBStore.save(self, must_create)
        session, expiry = self._session, self.get_expiry_age()
        cache_guarded(lambda: self._cache.set(self.cache_key, session, expiry), doing="caching a session")

    def delete(self, session_key=None):
        DBStore.delete(self, session_key)
        session_key = session_key or self.session_key
        if session_key:
            cache_guarded(lambda: self._cache.delete(self.cache_key_prefix + session_key), doing="deleting a session")

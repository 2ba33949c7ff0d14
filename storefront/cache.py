"""Django's Redis cache, keeping one Redis client per connection pool.

Django's backend builds a new `redis.Redis` for every cache call, and each one copies redis-py's table of
about 170 response callbacks: some three per request here, a measurable share of a paid order's CPU. A client
is safe to share between threads (it takes a connection from its pool for each command) and its pool notices a
fork, so one client per pool serves the process."""

from django.core.cache.backends.redis import RedisCache, RedisCacheClient


class _ClientPerPool(RedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}

    def get_client(self, key=None, *, write=False):
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            client = self._clients[index] = self._client(connection_pool=self._get_connection_pool(write))
        return client


class ReusingRedisCache(RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = _ClientPerPool

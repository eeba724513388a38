"""The one HTTP boundary between replibatch and Replicate's API.

    auth.py     which token and base URL a run uses (``api_token=``, ``client=``, the environment)
    client.py   our httpx clients (auth header, base URL, user agent, TLS) and sending one request
    errors.py   the one translation of every foreign failure into ``replibatch.errors``
    reply.py    ApiReply, what a successful request returns
    edge.py     Edge: the API's operations the engine calls (create, get, list, cancel, upload,
                download)
"""

from replibatch._http.auth import Connection

__all__ = ["Connection"]

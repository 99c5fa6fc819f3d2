"""The reconstruction service, the server side of the paper's data flow.

The user's device makes the privacy bundle; ``privhead submit`` (or ``protect --submit``) uploads
it; ``privhead serve`` checks it (:mod:`~privhead.service.archive`: the archive, the bundle, and
a face detector on every neutral RGB view), queues it (:mod:`~privhead.service.store`: SQLite),
reconstructs it in worker processes (:mod:`~privhead.service.worker`) and serves the results to
the holder of the job's token (:mod:`~privhead.service.app`, with a web page and a WebGL
viewer in ``static/``). Heavy parts (Starlette, uvicorn) are the ``serve`` extra.
"""

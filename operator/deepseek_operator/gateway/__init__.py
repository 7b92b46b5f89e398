"""The gateway: the one way in to every DeepSeekDeployment's OpenAI API.

`deepseek-operator gateway` authenticates callers with a TokenReview, authorizes
model:query with a SubjectAccessReview, routes by the request's `model` to the
DeepSeekDeployment serving it, holds requests while it has no ready replica (scale from
zero) or all replicas are busy, writes one audit line per request, and exports per
deployment request metrics for the autoscaler. docs/gateway.md describes it for users.

Why aiohttp: it is already installed with kopf (no new dependency in the image), gives a
server and a client on one asyncio loop, streams request and response bodies chunk by chunk
(`StreamResponse.write`, `ClientResponse.content.iter_any`), bounds request bodies
(`client_max_size`) and cancels a handler when its client goes away
(`handler_cancellation`), which is how an abandoned stream is cancelled at the engine. An
ASGI stack would add a server (uvicorn) and an HTTP client (httpx) for the same.

Layering: a sibling of `controller`; it imports `api` and nothing of the operator proper.
The kubernetes client is synchronous: reviews run on a thread pool and the watch on its
own thread, so the event loop is never blocked by the API.
"""

"""The HTTP layer both servers share: the framework-free request, response and router
(``routing``), the route table (``api``), the JSON wire format (``wire``), ACME over
HTTP (``acme``) and per-client rate limits (``ratelimit``)."""

"""Enable the circuit breaker in a LiteLLM proxy with one config line.

.. code-block:: yaml

    litellm_settings:
      callbacks: ["litellm_circuit_breaker.proxy.breaker"]

Settings come from ``CIRCUIT_BREAKER_*`` environment variables (see the
README); a bad value stops the proxy at startup with a message naming the
variable and the value. ``GET /circuit-breaker/status`` (admins only) shows
the answering worker's breakers and, with Redis, the fleet's records.
"""

# Absolute on purpose: LiteLLM may load this file by path, outside its package.
from litellm_circuit_breaker._proxy import ProxyCircuitBreaker, proxy_breaker

__all__ = ["breaker"]

breaker: ProxyCircuitBreaker = proxy_breaker()

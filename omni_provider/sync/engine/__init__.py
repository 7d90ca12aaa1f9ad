"""The engine every sync target runs: check -> read -> plan -> guard -> apply -> report -> judge, one write
loop (settle once, canary gate, circuit breaker, stop), one outcome base and the report sinks."""

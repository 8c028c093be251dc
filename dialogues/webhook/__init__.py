"""The inbound webhook: channels POST their customers' messages here.

`views` (the endpoint), `urls`, `parsing` (secret header, bounded raw body, strict JSON),
`serializers` (the body's and the answer's shapes), `openapi` (its schema and examples).
"""

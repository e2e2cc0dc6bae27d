"""IBM Key Protect as the root of trust: IAM tokens, a treq client, the wrapper, tenants'
root keys, and rewrapping after a rotation.
"""

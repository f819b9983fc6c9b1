"""citycode service: wires issuers, verifiers and the SDK into a Flask app and a CLI.

The app factory is ``codeservice.app.create_app``; it is not imported here, so that the
``citycode`` command starts without loading Flask and the web layer.
"""

"""Scale-out on Ray Serve: ``python app.py --replicas N`` runs N engine replicas behind the one Gradio front end.

``cluster`` starts (or joins, with ``RAY_ADDRESS``) Ray and deploys ``replica.EngineReplica``; ``remote.RemoteStudio``
is the front end's Studio whose generate/replay/preview run on a replica; ``cancel_board`` carries cancels to the
replica running a request; ``wire`` is what crosses between them. Nothing here is imported without ``--replicas``.
"""

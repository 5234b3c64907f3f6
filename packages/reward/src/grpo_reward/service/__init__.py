"""The gRPC RewardService: proto conversion, request validation, the servicer and the server."""

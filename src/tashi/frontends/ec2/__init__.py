"""The EC2 front-end (issue 16): the EC2 Query API (protocol ``ec2``, version 2016-11-15) on
its own listener of the cluster manager, calling the same services as the REST API.

``errors`` is the AWS error format; ``sigv4`` verifies AWS Signature Version 4; ``protocol``
reads a query request into the shape botocore's service model describes and writes the XML
answer from one.
"""

#!/bin/sh
# kafka-topics.sh of the official image, for the stand-in.
exec java -Xmx256m -cp '/opt/kafka/libs/*' org.apache.kafka.tools.TopicCommand "$@"

// Exports nothing: stands in for @push.rocks/smartdata, @push.rocks/mongodump and mongodb-memory-server.
module.exports = {};

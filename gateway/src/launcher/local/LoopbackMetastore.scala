// A tenant's catalog for local drivers: Hive's metastore service (the one Spark ships, Hive 2.3),
// served on one loopback address. Hive 2.3's own `HiveMetaStore` main binds every interface and
// has no authentication, so sparkgate starts this instead. sparkgate compiles it once with the
// Scala compiler in Spark's own jars (see catalog.rs); settings come as Java system properties,
// which HiveConf reads.
package sparkgate

import java.net.InetSocketAddress

import org.apache.hadoop.hive.conf.HiveConf
import org.apache.hadoop.hive.metastore.{HiveMetaStore, TSetIpAddressProcessor}
import org.apache.hadoop.hive.metastore.HiveMetaStore.HMSHandler
import org.apache.thrift.protocol.{TBinaryProtocol, TProtocol}
import org.apache.thrift.server.{ServerContext, TServerEventHandler, TThreadPoolServer}
import org.apache.thrift.transport.{TServerSocket, TTransport, TTransportFactory}

object LoopbackMetastore {
  def main(args: Array[String]): Unit = {
    if (args.length != 2) {
      System.err.println("usage: sparkgate.LoopbackMetastore HOST PORT")
      System.exit(2)
    }
    val conf = new HiveConf(classOf[HMSHandler])
    // Opens (or creates) the catalog database before the port is bound: a client that
    // connects finds it ready.
    val handler = HiveMetaStore.newRetryingHMSHandler("sparkgate catalog", conf, false)
    val socket = new TServerSocket(new InetSocketAddress(args(0), args(1).toInt))
    val server = new TThreadPoolServer(
      new TThreadPoolServer.Args(socket)
        .processor(new TSetIpAddressProcessor(handler))
        .transportFactory(new TTransportFactory())
        .protocolFactory(new TBinaryProtocol.Factory())
        .minWorkerThreads(conf.getIntVar(HiveConf.ConfVars.METASTORESERVERMINTHREADS))
        .maxWorkerThreads(conf.getIntVar(HiveConf.ConfVars.METASTORESERVERMAXTHREADS)))
    // Each connection's thread holds its own store (a database connection): free it when the
    // connection ends, as Hive's own server does.
    server.setServerEventHandler(new TServerEventHandler {
      override def preServe(): Unit = ()
      override def createContext(in: TProtocol, out: TProtocol): ServerContext = null
      override def deleteContext(ctx: ServerContext, in: TProtocol, out: TProtocol): Unit =
        HMSHandler.removeRawStore()
      override def processContext(ctx: ServerContext, in: TTransport, out: TTransport): Unit = ()
    })
    System.out.println(s"sparkgate catalog serving on ${args(0)}:${args(1)}")
    System.out.flush()
    server.serve()
  }
}

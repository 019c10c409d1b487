// A real YARN (ResourceManager + one NodeManager, Hadoop's MiniYARNCluster) and the HDFS it stages
// application files on (a NameNode + one DataNode, MiniDFSCluster), on 127.0.0.1, for the tests;
// run by scripts/yarn_cluster.py as a single-file program (Java 17):
//   java -cp 'JARS/*' MiniYarn.java CONF_DIR RM_PORT NM_MEMORY_MB JARS_DIR
// It writes CONF_DIR/yarn-site.xml and core-site.xml for clients, prints READY, and runs until
// killed.
import java.io.FileOutputStream;
import java.io.OutputStream;
import java.io.File;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import org.apache.hadoop.yarn.conf.YarnConfiguration;
import org.apache.hadoop.yarn.server.MiniYARNCluster;

public class MiniYarn {
  public static void main(String[] args) throws Exception {
    String confDir = args[0];
    int rmPort = Integer.parseInt(args[1]);
    int nmMemoryMb = Integer.parseInt(args[2]);
    String jarsDir = args[3];
    // skein stages files on the default filesystem and cannot compare two file:/// URIs (both
    // without a host), so applications need a real HDFS, as on a production cluster.
    Configuration dfsConf = new Configuration();
    dfsConf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, new File("dfs").getAbsolutePath());
    dfsConf.set("dfs.permissions.enabled", "false");
    MiniDFSCluster dfs = new MiniDFSCluster.Builder(dfsConf).numDataNodes(1).build();
    dfs.waitActive();
    String defaultFs = dfs.getFileSystem().getUri().toString();
    YarnConfiguration conf = new YarnConfiguration();
    conf.set("fs.defaultFS", defaultFs);
    conf.setBoolean(YarnConfiguration.YARN_MINICLUSTER_FIXED_PORTS, true);
    conf.set(YarnConfiguration.RM_HOSTNAME, "127.0.0.1");
    conf.set(YarnConfiguration.RM_ADDRESS, "127.0.0.1:" + rmPort);
    conf.set(YarnConfiguration.RM_SCHEDULER_ADDRESS, "127.0.0.1:" + (rmPort + 1));
    conf.set(YarnConfiguration.RM_RESOURCE_TRACKER_ADDRESS, "127.0.0.1:" + (rmPort + 2));
    conf.set(YarnConfiguration.RM_ADMIN_ADDRESS, "127.0.0.1:" + (rmPort + 3));
    conf.set(YarnConfiguration.RM_WEBAPP_ADDRESS, "127.0.0.1:" + (rmPort + 4));
    conf.set(YarnConfiguration.NM_ADDRESS, "127.0.0.1:0");
    conf.set(YarnConfiguration.NM_LOCALIZER_ADDRESS, "127.0.0.1:0");
    conf.set(YarnConfiguration.NM_WEBAPP_ADDRESS, "127.0.0.1:0");
    conf.setInt(YarnConfiguration.YARN_MINICLUSTER_NM_PMEM_MB, nmMemoryMb);
    conf.setInt(YarnConfiguration.NM_PMEM_MB, nmMemoryMb);
    conf.setInt(YarnConfiguration.NM_VCORES, 8);
    conf.setInt(YarnConfiguration.RM_SCHEDULER_MINIMUM_ALLOCATION_MB, 128);
    // Ray's processes share memory through the object store and map large virtual areas: YARN's
    // memory checks would kill the containers for it (see yarn/README.md).
    conf.setBoolean(YarnConfiguration.NM_PMEM_CHECK_ENABLED, false);
    conf.setBoolean(YarnConfiguration.NM_VMEM_CHECK_ENABLED, false);
    conf.setFloat(
        YarnConfiguration.NM_MAX_PER_DISK_UTILIZATION_PERCENTAGE, 99.9f);
    // Finished applications' container logs move to HDFS, where `rayflow yarn logs` reads them.
    conf.setBoolean(YarnConfiguration.LOG_AGGREGATION_ENABLED, true);
    conf.set(YarnConfiguration.NM_REMOTE_APP_LOG_DIR, "/tmp/logs");
    conf.set(YarnConfiguration.YARN_APPLICATION_CLASSPATH, confDir + "," + jarsDir + "/*");
    MiniYARNCluster cluster = new MiniYARNCluster("rayflow-tests", 1, 1, 1);
    cluster.init(conf);
    cluster.start();
    long deadline = System.currentTimeMillis() + 60000;
    while (cluster.getResourceManager().getRMContext().getRMNodes().isEmpty()) {
      if (System.currentTimeMillis() > deadline) {
        throw new IllegalStateException("the NodeManager did not register in 60 s");
      }
      Thread.sleep(100);
    }
    Configuration written = new Configuration(cluster.getConfig());
    // The cluster reports "localhost": clients get the loopback address itself.
    written.set(YarnConfiguration.RM_ADDRESS, "127.0.0.1:" + rmPort);
    written.set(YarnConfiguration.RM_SCHEDULER_ADDRESS, "127.0.0.1:" + (rmPort + 1));
    written.set(YarnConfiguration.RM_RESOURCE_TRACKER_ADDRESS, "127.0.0.1:" + (rmPort + 2));
    written.set(YarnConfiguration.RM_ADMIN_ADDRESS, "127.0.0.1:" + (rmPort + 3));
    try (OutputStream out = new FileOutputStream(confDir + "/yarn-site.xml")) {
      written.writeXml(out);
    }
    Configuration core = new Configuration(false);
    core.set("fs.defaultFS", defaultFs);
    try (OutputStream out = new FileOutputStream(confDir + "/core-site.xml")) {
      core.writeXml(out);
    }
    System.out.println("READY 127.0.0.1:" + rmPort);
    System.out.flush();
    Thread.currentThread().join();
  }
}
